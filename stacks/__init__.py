"""The CDK app's stacks, one per concern: storage, functions, orchestration, monitoring.

Importing this package must stay cheap (no aws_cdk import): the Lambda build script reads
``stacks.lambda_packaging`` without starting the CDK's Node runtime.
"""
