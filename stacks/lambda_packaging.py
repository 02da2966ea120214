"""What each Lambda function ships, and for which runtime: read by the build script
(``scripts/build_lambdas.py``) and by the functions stack, so they cannot disagree.

No aws_cdk import here: the build script must not need the CDK's Node runtime.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_BUILD_DIR = ROOT / "build" / "lambda"

# The newest Python runtime aws-cdk-lib knows (cdk-nag AwsSolutions-L1 requires the latest
# of the family), on Graviton: ~20% cheaper per GB-second than x86_64, and every wheel we
# need is published for manylinux aarch64.
PYTHON_VERSION = "3.14"
ARCHITECTURE = "arm64"
# Both tags: with only manylinux2014, pip silently falls back to old releases of packages
# that now publish manylinux_2_28 wheels only.
PIP_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")

# Our own code, copied into every function: the handlers (lambdas/) and the domain (totes/).
SOURCE_PACKAGES = ("totes", "lambdas")

# Only what each stage imports. boto3 is in the runtime already; pyarrow is never needed
# (polars reads CSV and reads/writes Parquet by itself) and would not fit next to polars.
FUNCTION_REQUIREMENTS: dict[str, list[str]] = {
    "extract": ["psycopg2-binary", "aws-lambda-powertools"],
    # psycopg2 only for psycopg2.sql composition in a shared module.
    "transform": ["polars", "polars-runtime-32", "psycopg2-binary", "aws-lambda-powertools"],
    "load": ["polars", "polars-runtime-32", "psycopg2-binary", "aws-lambda-powertools"],
}
