"""The benchmark harness (app layer, beside the CLI, the suite and the service): the methods and their parsing
(`methods`), the layer-by-layer baselines (`baselines`), the bench runner (`harness`), its figure (`plot`), the
HTTP load generator (`loadgen`), a CPU bench script's machine record (`machine`), the hostile harness of
`bench/reliability.py` (`reliability`, with its workspace and runners in `reliability_base` and its cases in
`reliability_inputs` and `reliability_cases`), the GPU check (`gpu_check`, `gpu_sections`), the measurements behind
the other long `bench/` scripts (`serve_bench`, `train_diagnostics`, `exit_table_bench`, `padding_bench`,
`export_report`) and the export benchmarks' fallback MiniLM (`minilm`). Serving (`runtime`) imports none of it.
"""
