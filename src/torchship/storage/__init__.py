"""Object storage (S3 or S3-compatible) shared by the stages that use it: fetch reads model sources from it,
publish and pull write and read versions. It sits below both, so neither stage imports the other.

`s3`: the client, `s3://` URIs, verified uploads and downloads, one error line per S3 failure;
`model_dir`: a Hugging Face model directory stored under a prefix; `local`: all-or-nothing local directories;
`errors`: the error tree of storage, publish, pull and registry."""
