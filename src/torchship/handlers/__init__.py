"""Code that runs inside TorchServe, shipped inside every .mar as the package `torchship_handlers`.

It depends only on torch, transformers/tokenizers and the standard library, never on the rest of
torchship, so a plain TorchServe serves the .mar with no torchship installed. Modules here use relative
imports so that they work both as `torchship.handlers` (in-process validation) and `torchship_handlers`.
"""
