"""The worker: consumer groups, the batch executor, topic admin and batched producing."""
