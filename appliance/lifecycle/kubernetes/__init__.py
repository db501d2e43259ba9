"""The Kubernetes replica backend: engine replicas as pods, for EKS with the Neuron device plugin.

With ``APPLIANCE_REPLICA_BACKEND=kubernetes``, ``manage.py run_agent`` runs :class:`ReplicaController` instead of the
process agent. The controller stands for the whole cluster as one Node row (its NeuronCore budget set by settings),
creates one pod per placed Replica row through the Kubernetes API, deletes the pods of draining and stopped replicas,
and reads each pod's readiness, IP and container status back into its row.

Validated against the official client's API objects, the Kubernetes schemas (kubernetes-validate) and a stand-in
API server in the tests; no cluster has run it (deploy/kubernetes/README.md).
"""
