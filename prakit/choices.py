"""The fixed choices of an experiment config, in one torch-free module so that the command line
offers the same ones in its ``--help`` without importing torch."""

#: The swappable parts of a model, in the order they are built and reported.
MODEL_KINDS = ("backbone", "generator", "decoder", "rollout")
#: Where ``prakit submit`` runs a job: ``local`` (a subprocess here), ``debug`` (in this process), ``slurm``.
CLUSTERS = ("local", "debug", "slurm")
#: How the guidance scale moves over the tokens of an image (``sample.cfg_schedule``).
GUIDANCE_SCHEDULES = ("constant", "linear")
#: How sampling runs the decoding step and the head's network (``sample.compile``): eager, or
#: torch.compile in one of its modes ("reduce-overhead": CUDA graphs, for the GPU).
SAMPLER_COMPILE = ("off", "default", "reduce-overhead", "max-autotune")
#: The weights sampling uses (``sample.ema``): live weights, the EMA of largest or of smallest decay.
EMA_CHOICES = ("none", "slow", "fast")
#: Image channels a store holds: grey or RGB.
CHANNELS = (1, 3)
