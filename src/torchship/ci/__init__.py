"""The CI helpers a buildspec calls, as `torchship ci ...` subcommands (one module per job): which model
specs a push ships (changed_specs), and the image details a pipeline hands on (image_detail). They ship in
the package so a user's repository needs nothing from torchship's checkout."""
