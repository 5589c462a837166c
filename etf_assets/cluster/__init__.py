"""The heavy steps' work as tasks on a Dask cluster, when `ETF_DASK_SCHEDULER` names one."""
