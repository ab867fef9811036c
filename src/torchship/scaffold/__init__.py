"""`torchship init`: scaffold a repository that ships its own models (specs, buildspec, pipeline, settings).

checkpoint.py reads the saved model, files.py renders every file from templates/scaffold/, plan.py decides
what to do with each one (record.py remembers what init wrote), repository.py checks, then writes;
own_checkout.py renders the same templates for torchship's own checkout. Nothing is imported here: the CLI
loads help_text.py at start-up and the rest only when `init` runs."""
