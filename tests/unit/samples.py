"""One valid payload per message type (envelope added by the tests). Add one with every new .avsc."""
SAMPLES = {
    "aietl.pipelines.v1.CreatePipeline": {"description": "copy orders to ClickHouse", "name": None,
                                          "labels": {"team": "bi"}},
    "aietl.pipelines.v1.PipelineRequested": {"description": "copy orders to ClickHouse", "name": "orders",
                                             "labels": {}},
    "aietl.pipelines.v1.CommandRejected": {"command_id": "c1", "command_type": "aietl.pipelines.v1.CreatePipeline",
                                           "error_code": "pipeline_exists", "reason": "pipeline p1 already exists"},
}
