"""HQ's side of the chain: the stores' bridged broker topics, time-series queries, reports and
HQ's web pages. Imports ``storeedge`` and ``cloud_bridge`` query clients only; stores and HQ talk
through the broker bridge, the time-series server and the ERP."""
