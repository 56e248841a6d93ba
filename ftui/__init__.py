"""ftui: a terminal workbench for fine-tuning ImageNet-pretrained vision models."""

__version__ = "0.1.0"
