"""Local TorchServe: config, process lifecycle, client."""
