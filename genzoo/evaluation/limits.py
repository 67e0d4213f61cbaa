"""The ranges of evaluation's counts: what ``--help`` shows and click refuses at once, and what the configs refuse.

Kept apart from the code that measures (torch-fidelity, torchvision), so that the command line, which shows them
in every ``--help``, imports none of it: ``--iwae-k 100000000`` was refused only after seven seconds of start,
by ``EvalConfig``, and its help showed no upper bound (nineteenth hostile pass, files M1).
"""

#: Upper bounds, so a mistyped count is refused rather than run for days: K = 10,000 is
#: 50 times the default (about 50 minutes on the 10,000 test images on a 2-core CPU), and
#: 100,000 FID samples is ten times MNIST's test split (Inception features of 100,000
#: samples take 0.8 GB).
MAX_IWAE_K = 10_000
MAX_FID_SAMPLES = 100_000
#: ``genzoo latent``'s midpoints behind the numbers by default: as many as MNIST's test images, as FID's reference.
DEFAULT_PAIRS = 10_000
#: More would only cost time: ten times the test split.
MAX_PAIRS = 100_000
