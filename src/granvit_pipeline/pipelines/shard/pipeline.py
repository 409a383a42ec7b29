from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.shard import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.plan_region_shards,
                ["regions", "params:shard"],
                "shards",
                name="shard_regions",
            )
        ]
    )
