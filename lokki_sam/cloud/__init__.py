"""Commands against a deployed flow: `lokki-sam invoke`, `runs` and `result`.

Imported only by the CLI (never by the Lambda runtime): it may use boto3 and rich freely.
"""
