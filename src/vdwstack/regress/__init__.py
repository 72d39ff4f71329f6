"""Stage 5, regress: ResNet regressors of slip (Da, Db) and twist θ trained on the synthesized data,
and their evaluation on held-out generated test sets (the paper's protocol)."""

from vdwstack.regress.evaluate import evaluate_slip, evaluate_twist
from vdwstack.regress.model import Regressor, TargetCodec
from vdwstack.regress.stage import train_from_dataset
from vdwstack.regress.training import RegressorConfig, train_regressor

__all__ = ["Regressor", "RegressorConfig", "TargetCodec", "evaluate_slip", "evaluate_twist", "train_from_dataset",
           "train_regressor"]
