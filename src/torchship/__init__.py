"""torchship: ship trained PyTorch / Hugging Face models to TorchServe."""

__version__ = "0.1.0"
