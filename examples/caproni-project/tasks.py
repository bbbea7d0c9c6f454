"""The example project's tasks: caproni-tasks composed in one line, as any project would."""

import caproni_tasks

ns = caproni_tasks.namespace()
