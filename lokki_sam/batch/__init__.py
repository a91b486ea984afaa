"""Steps that run as AWS Batch jobs: their sizing, the job's contract with the state machine,
the container's entry point (`python -m lokki_sam.batch`) and the local subprocess.

Importing this package costs nothing: each module is imported by whoever needs it (the
definition checks need `sizing`, the Batch container `entry`, the local runner `local`).
"""
