"""The built-in kinds, one module each: ``process``, ``mirror``, ``skaffold``.

Each module registers its `caproni_tasks.config.kinds.Kind` (name, section schema,
settings builder, manager) when imported; `caproni_tasks.config.kinds.find_kind`
imports it the first time its name is asked for. Nothing here is imported eagerly.
"""
