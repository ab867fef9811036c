"""What changes for users between two versions of a model: `torchship diff`, the promotion gate, canary replay."""
