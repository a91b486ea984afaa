"""Compatibility home of the flow API and graph types: they live in `dsl`, `ir`, `options` and `build`.

options  <-  ir  <-  build  <-  dsl      (imports run one way)
"""

from lokki_sam.dsl import Chain, Flow, Step, build_graph, flow, step
from lokki_sam.ir import Binding, Const, FlowGraph, MapBlock, Node, ParamRef, Stage
from lokki_sam.options import ARCHITECTURES, EXECUTION_TYPES, MAP_MODES, MapOptions, Retry, StepOptions

__all__ = [
    "ARCHITECTURES",
    "EXECUTION_TYPES",
    "MAP_MODES",
    "Binding",
    "Chain",
    "Const",
    "Flow",
    "FlowGraph",
    "MapBlock",
    "MapOptions",
    "Node",
    "ParamRef",
    "Retry",
    "Stage",
    "Step",
    "StepOptions",
    "build_graph",
    "flow",
    "step",
]
