"""The pipeline's state machine definition, installed as the package ``totes.statemachine``
(see pyproject.toml) so that ``totes run`` finds it in any installation. CDK deploys the
same file; ``totes.contract`` is the one place that reads it."""
