"""Work on a TaskQueue thread and an InstancePool, awaited by the method."""

import threading

from toto.tasks import InstancePool, TaskQueue


class Counter:
    def __init__(self):
        self.count = 0

    def add(self, n):
        self.count += n
        return self.count


POOL = InstancePool([Counter(), Counter()])


async def invoke(handler, params):
    thread = await TaskQueue.instance("demo", 2).yield_task(lambda: threading.current_thread().name)
    total = await POOL.await_transaction(lambda counter: counter.add(int(params.get("n", 1))))
    return {"thread": thread, "on_loop_thread": thread == threading.current_thread().name, "total": total}
