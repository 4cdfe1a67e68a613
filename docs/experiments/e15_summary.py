"""E15: the validation curves, where the dream-up-real-down rule fires and where patience 2 stops."""
import json, sys
sys.path.insert(0, '/work/main')  # exploit_flag with best= (commit 536ccc1)
from worldmodels.commands.train_controller import exploit_flag
rows = {"E14c (base)": "e14c_s{}", **{v: f"e15_{v}_s{{}}" for v in ("recent", "tau15", "short", "drop2")}}
for name, pat in rows.items():
    bests, means, out = [], [], []
    for s in (0, 1, 2):
        ev = json.load(open(pat.format(s) + "/done.json"))["evals"]
        vals = [e[1] for e in ev]
        bests.append(max(vals)); means.append(sum(vals) / len(vals))
        flags = []
        for i, e in enumerate(ev):
            prev = ev[:i]
            best = max(prev, key=lambda x: x[1]) if prev else None
            if exploit_flag(e[3], e[1], 150.0, best=best): flags.append(e[0])
        # patience 2: stop once 2 evals since the best
        stop = None
        for i in range(len(ev)):
            b = max(range(i + 1), key=lambda j: ev[j][1])
            if i - b >= 2: stop = ev[i][0]; break
        out.append(f"s{s}: " + " / ".join(f"{v:.0f}" for v in vals) + f" flags {flags} stop@{stop}")
    print(f"{name}: best {sum(bests)/3:.1f} ({', '.join(f'{b:.1f}' for b in bests)}), mean of evals {sum(means)/3:.1f}")
    for o in out: print("   ", o)
