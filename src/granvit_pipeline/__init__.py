"""granvit_pipeline: trains GranViT fine-grained vision encoders as Kedro pipelines."""

__version__ = "0.1.0"
