"""fstgate's gate as a Kubeflow Pipelines (v2) container component.

`component.yaml` is this component compiled (`python component.py`); load either:

    from kfp import components
    fstgate_gate = components.load_component_from_file("component.yaml")

The task fails when `fstgate gate` exits non-zero: 1 a release policy denied an upload, 2 an
error (a source not polled, a job failed or waiting for a retry). KFP uploads output artifacts
only when the task succeeds; after a denial the report is still in the destination (each
model's report.json and signed decision) and the markdown summary is in the task's log.
"""

from kfp import compiler, dsl

IMAGE = "ghcr.io/fstgate/fstgate:0.1.0"


@dsl.container_component
def fstgate_gate(
    gate_report: dsl.Output[dsl.Artifact],
    sarif: dsl.Output[dsl.Artifact],
    summary: dsl.Output[dsl.Markdown],
    config_path: str = "/etc/fstgate/fstgate.toml",
):
    """Poll the configured sources once, purify and judge every new upload, publish the outcomes.

    Args:
        config_path: the pipeline configuration (TOML) inside the container: a mounted ConfigMap.

    Returns:
        gate_report: the gate report (JSON, schemas/gate-report.schema.json).
        sarif: SARIF 2.1.0, one result per model.
        summary: markdown table of the models, C-Acc and ASR before and after, reasons.
    """
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["fstgate"],
        args=[
            "gate",
            "--config",
            config_path,
            "--json",
            gate_report.path,
            "--sarif",
            sarif.path,
            "--summary",
            summary.path,
        ],
    )


if __name__ == "__main__":
    compiler.Compiler().compile(fstgate_gate, "component.yaml")
