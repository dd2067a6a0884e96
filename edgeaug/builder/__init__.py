"""The workstation builder: plan -> render (workers, any executor) -> one ordered writer -> atomic finish.

* :mod:`.pipeline`: :func:`~edgeaug.builder.pipeline.build`, the orchestration;
* :mod:`.plan`: the plan, a pure function of the inputs; :mod:`.chunks`: its cut into chunk files;
* :mod:`.augment`: one record's ops, sampled then applied, and quantization;
* :mod:`.render`: read, decode and label one source, then render its variants (shared with verify);
* :mod:`.workers`, :mod:`.processes`, :mod:`.dask_exec`: who renders (local processes or a Dask cluster);
* :mod:`.partial`: ``OUT.partial/`` and its locks; :mod:`.resume`: what of an interrupted build is reused;
* :mod:`.writer` and :mod:`.merge`: the single ordered LMDB writer and the atomic finish;
* :mod:`.manifest`: what the pack is sealed with; :mod:`.audit`: quantization histograms and warnings.
"""
