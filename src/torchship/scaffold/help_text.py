"""`torchship init --help` text, kept apart so the CLI imports it without the scaffolding code."""

# Paragraphs are one line each (the help wraps them); the commands keep their lines.
INIT_EXAMPLES = """Example, in your repository, with the checkpoint your training saved in checkpoints/sentiment:

  pip install torchship
  torchship init --model checkpoints/sentiment
  torchship run models/sentiment/model.yaml

Run it again with another --model to add a model. It never overwrites a file you changed: it refuses, names the files and says --force (shared files you edited, such as torchship.toml, are kept)."""
