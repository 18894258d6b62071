# temporary probe (numpy-core), deleted after use
import numpy as np, timeit
def med(f, r=11):
    n = max(1, int(2e-3 / max(1e-7, timeit.timeit(f, number=1))))
    return np.median(timeit.repeat(f, number=n, repeat=r)) / n * 1e3
for shape in [(256,1024),(4096,1024)]:
    x=np.ones(shape,np.float32); buf=np.empty_like(x); buf2=np.empty_like(x); keep=[]
    r={}
    r['fill reused']=med(lambda: buf.fill(1))
    r['empty+fill 1 live']=med(lambda: np.empty_like(x).fill(1))
    def two():
        a=np.empty_like(x); a.fill(1); b=np.empty_like(x); b.fill(1); return a,b
    r['2 fresh live']=med(two)
    def three():
        a=np.empty_like(x); a.fill(1); b=np.empty_like(x); b.fill(1); c=np.empty_like(x); c.fill(1); return a,b,c
    r['3 fresh live']=med(three)
    print(shape, ' | '.join('%s %.3f'%kv for kv in r.items()), flush=True)
