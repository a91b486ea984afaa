"""`python -m lokki_sam.batch`: run the step a Batch job's environment names (see entry.py)."""

from lokki_sam.batch.entry import main

if __name__ == "__main__":
    raise SystemExit(main())
