"""The catalog: what can be served (Model, ModelVersion, Artifact) and where it runs (Node, Pool, Deployment, Replica).

A Deployment's `name` is the model id tenants pass as `model` in the OpenAI API.
"""
from django.db import models


class Device(models.TextChoices):
    CPU = "cpu", "CPU"
    CUDA = "cuda", "CUDA"
    NEURON = "neuron", "Neuron"


class Model(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    architecture = models.CharField(max_length=100, blank=True, help_text="e.g. LlamaForCausalLM")
    family = models.CharField(max_length=50, blank=True, help_text="llama, mistral, qwen2")
    tool_parser = models.CharField(
        max_length=20, blank=True, choices=[("hermes", "hermes"), ("llama3_json", "llama3_json"), ("mistral", "mistral")],
        help_text="How the model writes tool calls; blank: from the family (qwen2 hermes, llama llama3_json, "
                  "mistral mistral)")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    source_uri = models.CharField(max_length=1000, help_text="Local directory or s3:// URI of the HF checkpoint")
    checksum = models.CharField(max_length=64, blank=True, help_text="sha256 over the weight files")
    tokenizer_uri = models.CharField(max_length=1000, blank=True, help_text="Defaults to source_uri")
    context_length = models.PositiveIntegerField(default=2048)
    dtype = models.CharField(max_length=20, default="float32")
    config = models.JSONField(default=dict, blank=True, help_text="The checkpoint's config.json")
    has_chat_template = models.BooleanField(null=True, blank=True,
                                            help_text="The tokenizer has a chat template (empty: not checked)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model__name", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="unique_model_version")]

    def __str__(self) -> str:
        return f"{self.model.name}:v{self.version}"


class Artifact(models.Model):
    """A model prepared for one target (converted weights, or a Neuron compiled artifact), content-addressed."""

    digest = models.CharField(max_length=64, unique=True, help_text="sha256 of weights + configuration + toolchain")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="artifacts")
    target = models.CharField(max_length=10, choices=Device.choices)
    uri = models.CharField(max_length=1000)
    size_bytes = models.BigIntegerField(default=0)
    toolchain_version = models.CharField(max_length=100, blank=True)
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.model_version} [{self.target}] {self.digest[:12]}"


class Node(models.Model):
    """One machine running a node agent, with its accelerator inventory.

    `state`: ready (placement may use it), draining (its replicas move elsewhere, nothing new is placed there) or lost
    (its agent stopped heartbeating for NODE_LOST_AFTER_S; its replicas were placed again elsewhere). A lost node
    whose agent heartbeats again is ready again; a draining one stays draining until undrained.
    """

    class State(models.TextChoices):
        READY = "ready", "Ready"
        DRAINING = "draining", "Draining"
        LOST = "lost", "Lost"

    name = models.CharField(max_length=255, unique=True)
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.CPU)
    instance_type = models.CharField(max_length=50, blank=True)
    chips = models.PositiveIntegerField(default=0)
    cores = models.PositiveIntegerField(default=1, help_text="NeuronCores, GPUs, or CPU engine slots")
    memory_per_core_bytes = models.BigIntegerField(default=0)
    inventory = models.JSONField(default=dict, blank=True, help_text="Raw inventory, e.g. neuron-ls --json-output")
    address = models.CharField(max_length=255, default="127.0.0.1",
                               help_text="Where other nodes reach this node's replicas (NODE_ADDRESS)")
    state = models.CharField(max_length=10, choices=State.choices, default=State.READY)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Pool(models.Model):
    """A shared pool of cores into which models are loaded on demand and evicted least-recently-used."""

    name = models.SlugField(max_length=100, unique=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="pools")
    cores = models.PositiveIntegerField(default=1)
    max_loaded_models = models.PositiveIntegerField(default=2)
    memory_bytes = models.BigIntegerField(default=0, help_text="0: no byte budget, only max_loaded_models")
    evictions = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    class Mode(models.TextChoices):
        DEDICATED = "dedicated", "Dedicated cores"
        SHARED = "shared", "Shared pool (load on demand)"
        PER_MODEL = "per-model", "Per-model cores (scale to zero)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        WAITING = "waiting", "Waiting for capacity"
        RUNNING = "running", "Running"
        SCALED_TO_ZERO = "scaled-to-zero", "Scaled to zero"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"

    name = models.SlugField(max_length=100, unique=True, help_text="The `model` id tenants use in the API")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.CPU)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.DEDICATED)
    pool = models.ForeignKey(Pool, null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments")
    cores_per_replica = models.PositiveIntegerField(default=1)
    min_replicas = models.PositiveIntegerField(default=1)
    max_replicas = models.PositiveIntegerField(default=1)
    desired_replicas = models.PositiveIntegerField(default=1)
    idle_timeout_s = models.PositiveIntegerField(default=300)
    target_outstanding_per_replica = models.PositiveIntegerField(default=16)
    engine_args = models.JSONField(default=dict, blank=True, help_text="max_num_seqs, max_num_batched_tokens, ...")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    last_request_at = models.DateTimeField(null=True, blank=True)
    cold_starts = models.JSONField(
        default=list, blank=True, help_text="The last replica starts, newest first: {replica, started_at, "
        "total_s, phases: {phase: seconds}} (kept after the replicas go, e.g. at scale to zero)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def last_cold_start_phases(self) -> list[tuple[str, float]]:
        """The last start's phases in the order they happen (first_ready, the total, left out)."""
        phases = self.cold_starts[0].get("phases", {}) if self.cold_starts else {}
        return sorted(((k, v) for k, v in phases.items() if k != "first_ready"),
                      key=lambda kv: COLD_START_PHASES.index(kv[0]) if kv[0] in COLD_START_PHASES else 99)


COLD_START_PHASES = ("artifact_fetch", "process_start", "import_runtime", "weight_load", "compile_cache_hit", "warm_up", "first_ready")


class Replica(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        STARTING = "starting", "Starting"
        READY = "ready", "Ready"
        DRAINING = "draining", "Draining"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="replicas")
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="replicas")
    index = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    cores = models.JSONField(default=list, blank=True, help_text="Core indices owned on the node")
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(null=True, blank=True)
    socket_path = models.CharField(max_length=500, blank=True)
    # The bearer credential the replica process checks on every call (the node agent makes a new one per launch);
    # only the gateway and the control plane's scrapers read it. Never shown in the admin or the API.
    secret = models.CharField(max_length=128, blank=True, editable=False)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    cold_start_s = models.FloatField(null=True, blank=True,
                                     help_text="Launch to first token (artifact fetch included): first_ready")
    cold_start_phases = models.JSONField(
        default=dict, blank=True, help_text="Seconds per start phase: artifact_fetch, weight_load, compile or "
        "compile_cache_hit, warm_up, first_ready"
    )
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    restart_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment__name", "index"]

    def __str__(self) -> str:
        return f"{self.deployment.name}#{self.index}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """What a caller of the replica's internal server sends (runtime/server_app.py checks it)."""
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
