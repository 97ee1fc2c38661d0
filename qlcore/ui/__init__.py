"""The desk's dashboards (`qlcore serve`): one read model of the store, one action path with roles and audit,
and Panel pages built from `Viewer` components. See docs/dashboards.md."""
