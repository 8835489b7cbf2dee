"""KFP pipelines (the DAG files) and how to run, compile and schedule them."""
