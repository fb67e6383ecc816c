"""Deploying on NVIDIA Dynamo: the deployment directory (`deploy dynamo`) and running it (`serve --dynamo`)."""
