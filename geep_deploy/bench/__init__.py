"""The benchmark harness (app layer, beside the CLI, the suite and the service): the methods and their parsing
(`methods`), the layer-by-layer baselines (`baselines`), the bench runner (`harness`), its figure (`plot`), the
HTTP load generator (`loadgen`), a CPU bench script's machine record (`machine`), the hostile harness of
`bench/reliability.py` (`reliability`, with its workspace and runners in `reliability_base` and its cases in
`reliability_inputs` and `reliability_cases`) and the export benchmarks' fallback MiniLM (`minilm`). Serving
(`runtime`) imports none of it.
"""
