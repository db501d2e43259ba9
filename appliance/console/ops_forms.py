"""Console forms for the model lifecycle: start a compile, deploy a model. They check what a user can get wrong up
front; the lifecycle services check the rest and their errors are shown on the form."""
from __future__ import annotations

from django import forms

from appliance.catalog.models import Deployment, Device, Model, ModelVersion
from appliance.lifecycle.models import CompileJob

NEURON_TP = (1, 2, 4, 8, 24)
DTYPES = [("", "checkpoint's dtype"), ("float32", "float32"), ("bfloat16", "bfloat16"), ("float16", "float16")]


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: ModelVersion) -> str:
        return f"{obj.model.name}:v{obj.version} ({obj.dtype}, context {obj.context_length})"


def parse_buckets(text: str, field: str) -> list[int]:
    """'1, 4, 8' -> [1, 4, 8]; a clear ValidationError for anything else."""
    values = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise forms.ValidationError(f"{field}: {part!r} is not a positive whole number; write e.g. 1,4,8")
        values.append(int(part))
    return sorted(set(values))


class CompileForm(forms.Form):
    model_version = VersionChoiceField(queryset=ModelVersion.objects.select_related("model"), label="Model version")
    target = forms.ChoiceField(choices=Device.choices, initial=Device.CPU)
    tp_degree = forms.IntegerField(label="Tensor-parallel degree", min_value=1, max_value=32, initial=1,
                                   help_text="Neuron: 1, 2, 4, 8 or 24 (must divide the attention heads)")
    batch_buckets = forms.CharField(required=False, help_text="Compiled batch sizes, e.g. 1,4,8 (empty: default)")
    seq_len_buckets = forms.CharField(required=False, label="Sequence-length buckets",
                                      help_text="e.g. 128,512,2048 (empty: up to the context length)")
    dtype = forms.ChoiceField(choices=DTYPES, required=False)
    quantization = forms.ChoiceField(choices=CompileJob.Quantization.choices, initial=CompileJob.Quantization.NONE)
    kernels = forms.BooleanField(required=False, label="NKI kernels (Neuron only)")

    def clean_batch_buckets(self) -> list[int]:
        return parse_buckets(self.cleaned_data["batch_buckets"], "batch buckets")

    def clean_seq_len_buckets(self) -> list[int]:
        buckets = parse_buckets(self.cleaned_data["seq_len_buckets"], "sequence-length buckets")
        version = self.cleaned_data.get("model_version")
        if version is not None and buckets and buckets[-1] > version.context_length:
            raise forms.ValidationError(f"{buckets[-1]} exceeds the model's context length {version.context_length}")
        return buckets

    def clean(self) -> dict:
        data = super().clean()
        target, tp = data.get("target"), data.get("tp_degree")
        if target and tp is not None:
            if target == Device.NEURON and tp not in NEURON_TP:
                self.add_error("tp_degree", f"Inf2 supports tensor-parallel degree {', '.join(map(str, NEURON_TP))}")
            elif target != Device.NEURON and tp != 1:
                self.add_error("tp_degree", f"target {target} runs with tensor-parallel degree 1")
        if target and target != Device.NEURON and data.get("kernels"):
            self.add_error("kernels", "NKI kernels run only on Neuron; untick them or choose target neuron")
        return data


class DeployForm(forms.Form):
    model = forms.ModelChoiceField(queryset=Model.objects.all(), to_field_name="name",
                                   help_text="Deploys its latest version; the deployment is named after the model")
    device = forms.ChoiceField(choices=Device.choices, initial=Device.CPU)
    mode = forms.ChoiceField(choices=Deployment.Mode.choices, initial=Deployment.Mode.DEDICATED,
                             widget=forms.RadioSelect)
    cores_per_replica = forms.IntegerField(min_value=1, max_value=64, initial=1,
                                           help_text="NeuronCores (GPUs, CPU engine slots) per replica")
    min_replicas = forms.IntegerField(min_value=0, max_value=64, initial=1, help_text="0: scale to zero when idle")
    max_replicas = forms.IntegerField(min_value=1, max_value=64, initial=1)
    idle_timeout = forms.IntegerField(label="Idle timeout (s)", min_value=1, max_value=7 * 24 * 3600, initial=300,
                                      help_text="Idle this long: scale in (to zero when min is 0)")
    pool = forms.SlugField(required=False, max_length=100, help_text="Shared mode: the pool the model loads into")

    plan = None  # the neuron plan (appliance/runtime/neuron/plan.py) of a neuron deployment, once cleaned

    def clean(self) -> dict:
        data = super().clean()
        if data.get("device") == Device.NEURON and data.get("model") and data.get("cores_per_replica"):
            self._check_neuron_plan(data["model"], data["cores_per_replica"])
        low, high = data.get("min_replicas"), data.get("max_replicas")
        if low is not None and high is not None and low > high:
            self.add_error("min_replicas", f"min replicas ({low}) is more than max replicas ({high})")
        if data.get("mode") == Deployment.Mode.SHARED and not data.get("pool"):
            self.add_error("pool", "a shared deployment needs a pool name (it is created if new)")
        if data.get("mode") == Deployment.Mode.DEDICATED and low == 0:
            self.add_error("min_replicas", "dedicated deployments keep at least 1 replica; use per-model to scale "
                                           "to zero")
        return data

    def _check_neuron_plan(self, model: Model, cores: int) -> None:
        """Refuse a neuron deployment whose plan refuses (host or device memory, TP), with the plan's reason."""
        from appliance.lifecycle.plans import plan_for_deploy

        version = model.versions.order_by("-version").first()
        if version is None:
            return
        try:
            self.plan = plan_for_deploy(version, cores)
        except ValueError as exc:
            self.add_error(None, f"Cannot plan a neuron compile of {version}: {exc}")
            return
        if not self.plan.fits:
            self.add_error(None, f"The neuron plan refuses this deployment: {self.plan.reason}")
