# A fleet file for `nameserver import`: python3 fleet.py COUNT shuffled|ordered OUT.
# shuffled: as a real export comes (no order, codes of 7 to 10 digits, a KID per 20
# terminals); ordered: the same codes in the store's order, one KID.
import random, sys
n = int(sys.argv[1]); order = sys.argv[2]; out = sys.argv[3]
rng = random.Random(42)  # the same fleet in every run
codes = set()
# codes of 7 to 10 digits, unique
while len(codes) < n:
    length = rng.choice([7, 8, 9, 10])
    codes.add(str(rng.randrange(10**(length-1), 10**length)))
codes = list(codes)
if order == "ordered":
    codes.sort()
else:
    rng.shuffle(codes)
with open(out, "w") as f:
    for i, c in enumerate(codes):
        kid = f"cust{i // 20:06d}" if order != "ordered" else "fleet"
        v6 = f" 2001:db8::{i>>16:x}:{i&0xffff:x}" if i % 10 == 0 else ""
        f.write(f"{c} {kid} {i:016x} 10.{(i>>16)&255}.{(i>>8)&255}.{i&255}{v6}\n")
