"""A small shared library for the text-VAE examples (document model, sentence model).

Modules, generic over the model unless said otherwise:

* :mod:`textvae.data`: text-file reading with located errors, held-out splits, deterministic batching.
* :mod:`textvae.bow`: bag-of-words corpora in the NVDM format (20 Newsgroups, RCV1). Document model only.
* :mod:`textvae.latents`: Gaussian and von Mises-Fisher latent variables (posterior, prior, KL).
* :mod:`textvae.vae`: the contract a model fulfils so that training and evaluation can use it.
* :mod:`textvae.nvdm_model`: the neural variational document model (encoder MLP, softmax decoder).
* :mod:`textvae.training`: the training loop (checkpoint / resume, early stopping, lr decay, NaN stop).
* :mod:`textvae.checkpoint`: verified checkpoints, the run directory's lock, random states.
* :mod:`textvae.environment`: seeds, device, cores and threads, the torchrun process group, signals.
* :mod:`textvae.evaluation`: perplexities from the ELBO, importance-weighted bound, active units, embeddings.
* :mod:`textvae.config`: configuration sections (settings with their help and rule) and their flags.
* :mod:`textvae.runs`: one run end to end, several at once, the command frame of the scripts.
* :mod:`textvae.report`: run metadata, reports (Markdown + JSON), tables and plots.
"""
