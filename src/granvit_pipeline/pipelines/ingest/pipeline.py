from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.ingest import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.generate_demo_data,
                inputs="params:ingest",
                outputs=["demo_images", "demo_annotations"],
                name="generate_demo_data",
            ),
            Node(
                nodes.ingest_regions,
                inputs=["demo_annotations", "params:ingest"],
                outputs="raw_regions",
                name="ingest_regions",
            ),
        ]
    )
