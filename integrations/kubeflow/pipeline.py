"""A Kubeflow Pipelines (v2) pipeline around the fstgate gate component, with the Kubernetes
wiring from kfp-kubernetes: the configuration from a ConfigMap, secrets from a Secret, the job
store and the data sets from PersistentVolumeClaims.

    pip install kfp kfp-kubernetes      # checked with kfp 2.17.3 and kfp-kubernetes 2.17.3
    python pipeline.py            # writes fstgate-pipeline.yaml, to upload in the KFP UI

or submit it at once with `kfp.Client().create_run_from_pipeline_func(fstgate_pipeline)`.
"""

from pathlib import Path

from kfp import compiler, components, dsl, kubernetes

fstgate_gate = components.load_component_from_file(str(Path(__file__).with_name("component.yaml")))


@dsl.pipeline(name="fstgate-gate", description="Purify, judge and publish every new model upload.")
def fstgate_pipeline(config_path: str = "/etc/fstgate/fstgate.toml"):
    gate = fstgate_gate(config_path=config_path)
    # A gate pass depends on the registry's state, not on its inputs: never reuse a cached run.
    gate.set_caching_options(False)
    gate.set_cpu_request("4").set_memory_request("8G").set_memory_limit("16G")
    # With a CUDA build of the image: gate.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    gate.set_env_variable("FSTGATE_CACHE", "/var/lib/fstgate/cache")
    kubernetes.use_config_map_as_volume(gate, config_map_name="fstgate-config", mount_path="/etc/fstgate")
    kubernetes.use_secret_as_env(
        gate,
        secret_name="fstgate",
        secret_key_to_env={
            "FSTGATE_SIGNING_KEY": "FSTGATE_SIGNING_KEY",
            "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
        },
    )
    # The job store: one gate pass at a time per claim (ReadWriteOnce).
    kubernetes.mount_pvc(gate, pvc_name="fstgate-state", mount_path="/var/lib/fstgate")
    kubernetes.mount_pvc(gate, pvc_name="fstgate-datasets", mount_path="/mnt/datasets")


if __name__ == "__main__":
    compiler.Compiler().compile(fstgate_pipeline, "fstgate-pipeline.yaml")
