#!/usr/bin/env python3
"""Writes the malformed graph-description corpus under tests/data/graph_corpus/.

Each case is a small complete description derived from one valid base graph by one mutation, named after the
rule it breaks; manifest.txt lists `file expected_detail [stage]`, where stage says which step must reject it:
`load` (qd_graph_desc_parse), `instantiate` (qd_graph_desc_instantiate with batch=2), or `bind` (weight binding
against the checkpoint tests/test_graph.c writes: layers.N.fc1/fc2 with the right shapes, plus a
`layers.0.fc1.weight` variant of the wrong dtype or shape where the case asks for it). Standard library only;
run it again after changing a case, and commit the result (tests check that the committed files are current).
usage: tools/make_graph_corpus.py [OUTDIR]"""
import copy
import json
import os
import sys

BASE = {
    "qd_graph": 1,
    "name": "mini",
    "configs": {"base": {"dim": 4, "hidden": 8, "layers": 2}, "wide": {"extends": "base", "hidden": 16}},
    "bind": ["batch"],
    "sizes": {"double_dim": "2 * dim"},
    "inputs": {"x": {"dtype": "F32", "shape": ["batch", "dim"]}},
    "outputs": {"y": "y"},
    "blocks": {
        "mlp": {
            "inputs": ["h"],
            "outputs": {"h": "h2"},
            "nodes": [
                {"op": "linear", "in": "h", "out": "a", "weight": "fc1", "features": "hidden"},
                {"op": "gelu", "in": "a", "out": "b"},
                {"op": "linear", "in": "b", "out": "c", "weight": "fc2", "features": "dim"},
                {"op": "add", "in": ["h", "c"], "out": "h2"},
            ],
        }
    },
    "nodes": [{"call": "mlp", "repeat": "layers", "prefix": "layers.{i}.", "in": {"h": "x"}, "out": {"h": "y"}}],
}


def mutate(fn):
    g = copy.deepcopy(BASE)
    fn(g)
    return g


def mlp_nodes(g):
    return g["blocks"]["mlp"]["nodes"]


CASES = [
    # (file, detail, stage, mutation or raw text)
    ("not_json.json", "GRAPH_JSON", "load", '{"qd_graph": 1, "name": "mini",, }'),
    ("trailing_text.json", "GRAPH_JSON", "load", json.dumps(BASE) + " extra"),
    ("no_version.json", "GRAPH_FORMAT", "load", mutate(lambda g: g.pop("qd_graph"))),
    ("future_version.json", "GRAPH_FORMAT", "load", mutate(lambda g: g.update(qd_graph=2))),
    ("unknown_top_field.json", "GRAPH_UNKNOWN_FIELD", "load", mutate(lambda g: g.update(layers=3))),
    ("duplicate_key.json", "GRAPH_DUPLICATE_KEY", "load",
     json.dumps(BASE).replace('"dim": 4', '"dim": 4, "dim": 5', 1)),
    ("nodes_not_array.json", "GRAPH_FIELD_TYPE", "load", mutate(lambda g: g.update(nodes={"a": 1}))),
    ("no_configs.json", "GRAPH_FIELD_MISSING", "load", mutate(lambda g: g.pop("configs"))),
    ("unknown_op.json", "GRAPH_UNKNOWN_OP", "instantiate",
     mutate(lambda g: mlp_nodes(g)[1].update(op="gelu_fast"))),
    ("unknown_block.json", "GRAPH_UNKNOWN_BLOCK", "instantiate", mutate(lambda g: g["nodes"][0].update(call="mpl"))),
    ("block_recursion.json", "GRAPH_BLOCK_RECURSION", "instantiate",
     mutate(lambda g: mlp_nodes(g).append({"call": "mlp", "in": {"h": "h2"}, "out": {"h": "again"}}))),
    ("block_args.json", "GRAPH_BLOCK_ARGS", "instantiate",
     mutate(lambda g: g["nodes"][0].update({"in": {"h": "x", "extra": "x"}}))),
    ("block_param_unbound.json", "GRAPH_BLOCK_ARGS", "instantiate",
     mutate(lambda g: g["blocks"]["mlp"].update(params=["width"]) or mlp_nodes(g)[0].update(features="width"))),
    ("size_uses_loop_variable.json", "GRAPH_EXPR_UNKNOWN_NAME", "instantiate",
     mutate(lambda g: g["sizes"].update(layer_hidden="hidden + 0 * i") or
            mlp_nodes(g)[0].update(features="layer_hidden"))),
    ("quantization_keep_type.json", "GRAPH_FIELD_TYPE", "load",
     mutate(lambda g: g.update(quantization={"keep": "layers.*.fc2.weight"}))),
    ("undefined_value.json", "GRAPH_UNDEFINED_VALUE", "instantiate",
     mutate(lambda g: mlp_nodes(g)[1].update({"in": "aa"}))),
    ("value_defined_twice.json", "GRAPH_VALUE_REDEFINED", "instantiate",
     mutate(lambda g: mlp_nodes(g)[1].update(out="a"))),
    ("cycle.json", "GRAPH_CYCLE", "instantiate",
     mutate(lambda g: mlp_nodes(g).__setitem__(0, {"op": "linear", "in": "b", "out": "a", "weight": "fc1",
                                                    "features": "hidden"}))),
    ("shape_mismatch.json", "GRAPH_SHAPE_MISMATCH", "instantiate",
     mutate(lambda g: mlp_nodes(g)[2].update(features="hidden"))),
    ("arity.json", "GRAPH_ARITY", "instantiate", mutate(lambda g: mlp_nodes(g)[3].update({"in": ["h"]}))),
    ("missing_attr.json", "GRAPH_BAD_ATTR", "instantiate", mutate(lambda g: mlp_nodes(g)[0].pop("features"))),
    ("unknown_node_field.json", "GRAPH_UNKNOWN_FIELD", "instantiate",
     mutate(lambda g: mlp_nodes(g)[1].update(approximate="tanh"))),
    ("weight_on_plain_op.json", "GRAPH_BAD_ATTR", "instantiate", mutate(lambda g: mlp_nodes(g)[1].update(weight="w"))),
    ("unknown_config.json", "GRAPH_UNKNOWN_CONFIG", "load", mutate(lambda g: g.update(default_config="huge"))),
    ("config_cycle.json", "GRAPH_CONFIG_CYCLE", "instantiate",
     mutate(lambda g: g["configs"]["base"].update(extends="wide"))),
    ("bad_config_value.json", "GRAPH_BAD_CONFIG_VALUE", "instantiate",
     mutate(lambda g: g["configs"]["base"].update(hidden="eight"))),
    ("non_integer_size.json", "GRAPH_EXPR_NOT_INTEGER", "instantiate",
     mutate(lambda g: g["configs"]["base"].update(hidden=8.5))),
    ("expression_syntax.json", "GRAPH_EXPR_SYNTAX", "instantiate",
     mutate(lambda g: mlp_nodes(g)[0].update(features="hidden *"))),
    ("unknown_size.json", "GRAPH_EXPR_UNKNOWN_NAME", "instantiate",
     mutate(lambda g: mlp_nodes(g)[0].update(features="hiden"))),
    ("uneven_division.json", "GRAPH_EXPR_DIVISION", "instantiate",
     mutate(lambda g: mlp_nodes(g)[0].update(features="hidden / 3"))),
    ("size_cycle.json", "GRAPH_SIZE_CYCLE", "instantiate",
     mutate(lambda g: g["sizes"].update(double_dim="2 * double_dim", **{}) or
            mlp_nodes(g)[0].update(features="double_dim"))),
    ("zero_dimension.json", "GRAPH_BAD_SIZE", "instantiate",
     mutate(lambda g: g["inputs"]["x"].update(shape=["batch", "dim - 4"]))),
    ("unknown_input_dtype.json", "GRAPH_UNKNOWN_DTYPE", "instantiate",
     mutate(lambda g: g["inputs"]["x"].update(dtype="Q4"))),
    ("undefined_output.json", "GRAPH_UNDEFINED_OUTPUT", "instantiate", mutate(lambda g: g.update(outputs={"y": "z"}))),
    ("repeat_zero.json", "GRAPH_BAD_SIZE", "instantiate", mutate(lambda g: g["nodes"][0].update(repeat=0))),
    ("missing_weight.json", "WEIGHT_MISSING", "bind", mutate(lambda g: mlp_nodes(g)[2].update(weight="fc3"))),
    ("weight_wrong_shape.json", "WEIGHT_SHAPE", "bind", mutate(lambda g: g["configs"]["base"].update(hidden=6))),
    ("weight_wrong_dtype.json", "WEIGHT_DTYPE", "bind", mutate(lambda g: mlp_nodes(g)[0].update(weight="fc1_int"))),
    ("unknown_layout.json", "GRAPH_UNKNOWN_LAYOUT", "bind",
     mutate(lambda g: g.update(weight_layouts={"other": {"detect": "blocks.0.w", "rules": []}}))),
    ("bad_mapping.json", "GRAPH_BAD_MAPPING", "bind",
     mutate(lambda g: g.update(weight_layouts={"mine": {"detect": "layers.0.fc1.weight",
                                                        "rules": [{"to": "layers.{i}.fc1.*", "from": "l.{j}.a.*"}]}}))),
    ("slice_out_of_range.json", "WEIGHT_SLICE", "bind",
     mutate(lambda g: g.update(weight_layouts={"mine": {"detect": "layers.0.fc1.weight", "rules": [
         {"to": "layers.{i}.fc2.*", "from": "layers.{i}.fc2.*", "rows": [2, 9]}]}}))),
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                              "graph_corpus")
    os.makedirs(out, exist_ok=True)
    manifest = ["# file expected_detail stage (written by tools/make_graph_corpus.py)"]
    with open(os.path.join(out, "valid.json"), "w") as f:
        f.write(json.dumps(BASE, indent=1) + "\n")
    for name, detail, stage, case in CASES:
        text = case if isinstance(case, str) else json.dumps(case, indent=1) + "\n"
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
        manifest.append(f"{name} {detail} {stage}")
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print(f"wrote {len(CASES)} malformed graphs and valid.json to {out}")


if __name__ == "__main__":
    main()
