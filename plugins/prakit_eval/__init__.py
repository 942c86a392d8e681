"""Built-in evaluation: the feature networks ``inception`` (the TF-compatible Inception-v3 of the
FID literature) and ``featnet`` (a small classifier fitted to the real images), and the
evaluators ``fid``, ``sfid``, ``kid``, ``inception_score``, ``precision_recall``, ``class_consistency``,
``linear_probe``, ``rollout_gap``, ``reconstruction_psnr`` and ``sampling_speed``."""

from prakit.plugin_api import hookimpl
from prakit_eval import distribution, model_metrics
from prakit_eval.featnet import FeatNet, FeatNetConfig
from prakit_eval.inception import Inception, InceptionConfig


@hookimpl
def register_feature_networks(registrar):
    registrar.add(InceptionConfig, Inception)
    registrar.add(FeatNetConfig, FeatNet)


@hookimpl
def register_evaluators(registrar):
    for config, evaluator in (
        (distribution.FIDConfig, distribution.FID),
        (distribution.SFIDConfig, distribution.SFID),
        (distribution.KIDConfig, distribution.KID),
        (distribution.InceptionScoreConfig, distribution.InceptionScoreEvaluator),
        (distribution.PrecisionRecallConfig, distribution.PrecisionRecall),
        (model_metrics.ClassConsistencyConfig, model_metrics.ClassConsistency),
        (model_metrics.LinearProbeConfig, model_metrics.LinearProbe),
        (model_metrics.RolloutGapConfig, model_metrics.RolloutGap),
        (model_metrics.ReconstructionPSNRConfig, model_metrics.ReconstructionPSNR),
        (model_metrics.SamplingSpeedConfig, model_metrics.SamplingSpeed),
    ):
        registrar.add(config, evaluator)
