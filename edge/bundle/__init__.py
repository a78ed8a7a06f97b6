"""App bundles: the builds of one or more devices, packed with the tokenizer and a manifest
that apps read (``manifest.schema.json``), and the on-device variant selection rule."""
