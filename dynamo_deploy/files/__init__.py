"""The files of a Dynamo deployment directory, one module per kind of output; each renders text from a
`Deployment` (context.py) and writes nothing itself (write.py does, atomically)."""
