"""Stage 3, drit_train: the Trident-enhanced DRIT that turns clean simulations into experiment-like
images — networks, losses, training data, the training loop, translation metrics."""

from vdwstack.drit.networks import Drit, DritArchitecture, Translator
from vdwstack.drit.stage import train_drit
from vdwstack.drit.training import DritConfig, LossWeights, load_translator

__all__ = ["Drit", "DritArchitecture", "DritConfig", "LossWeights", "Translator", "load_translator", "train_drit"]
