"""The workstation builder: plan -> render (workers, any executor) -> one ordered writer -> atomic finish.

* :mod:`.pipeline`: :func:`~edgeaug.builder.pipeline.build`, the plan and the orchestration;
* :mod:`.augment`: one record's ops, sampled then applied, and quantization;
* :mod:`.render`: read, decode and label one source, then render its variants (shared with verify);
* :mod:`.writer`: the single ordered LMDB writer, resume and the atomic finish;
* :mod:`.audit`: quantization histograms and warnings.
"""
