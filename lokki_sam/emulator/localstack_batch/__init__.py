"""AWS Batch for lokki-sam's LocalStack: installed into LocalStack's venv as `lokki_sam_localstack_batch`
(see lokki_sam/emulator/plugin.py), beside the host Lambda executor. It imports LocalStack, the moto
LocalStack bundles, the standard library and itself only."""
