"""Renderings of a FlowGraph for AWS: the state machine (asl), the SAM template (sam), events."""
