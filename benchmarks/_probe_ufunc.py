# temporary probe (numpy-core), deleted after use
import numpy as np, timeit
def med(f, r=11):
    n = max(1, int(2e-3 / max(1e-7, timeit.timeit(f, number=1))))
    return np.median(timeit.repeat(f, number=n, repeat=r)) / n * 1e3
print(np.__version__)
for N,C,S in [(256,1024,1),(32,256,196),(4096,1024,1)]:
    rng=np.random.default_rng(0)
    x3=rng.standard_normal((N,C,S),dtype=np.float32); o3=np.empty_like(x3)
    x2=x3.reshape(N,C*S) if S==1 else None
    c1=np.ones((C,1),np.float32); c0=np.ones(C,np.float32)
    r={}
    r['copy']=med(lambda: np.copyto(o3,x3))
    r['mul scalar']=med(lambda: np.multiply(x3,np.float32(2),out=o3))
    r['mul 3d (C,1)']=med(lambda: np.multiply(x3,c1,out=o3))
    if S==1:
        x2=x3.reshape(N,C); o2=o3.reshape(N,C)
        r['mul 2d (C,)']=med(lambda: np.multiply(x2,c0,out=o2))
        r['mul 3d->2d view']=med(lambda: np.multiply(x3[:,:,0],c0,out=o3[:,:,0]))
    else:
        cb=np.broadcast_to(c1,(C,S))
        r['mul (C,S) bcast']=med(lambda: np.multiply(x3,cb,out=o3))
        r['mul per-channel loop']=med(lambda: [np.multiply(x3[:,c],c0[c],out=o3[:,c]) for c in range(C)])
    r['add same shape']=med(lambda: np.add(x3,x3,out=o3))
    r['einsum ncs->c']=med(lambda: np.einsum('ncs->c',x3))
    r['einsum ncs,ncs->c']=med(lambda: np.einsum('ncs,ncs->c',x3,x3))
    print((N,C,S), ' | '.join('%s %.3f'%kv for kv in r.items()), flush=True)
print('--- expanded (C*S,) coefficient rows')
for N,C,S in [(256,1024,1),(32,256,196),(4096,1024,1),(64,64,1024)]:
    rng=np.random.default_rng(0)
    x3=rng.standard_normal((N,C,S),dtype=np.float32); o3=np.empty_like(x3)
    c1=np.ones((C,1),np.float32)
    x2=x3.reshape(N,C*S); o2=o3.reshape(N,C*S)
    r={}
    r['copy']=med(lambda: np.copyto(o3,x3))
    r['mul 3d (C,1)']=med(lambda: np.multiply(x3,c1,out=o3))
    r['expand+mul rows']=med(lambda: np.multiply(x2,np.repeat(c1[:,0],S),out=o2))
    e=np.repeat(c1[:,0],S)
    r['mul rows']=med(lambda: np.multiply(x2,e,out=o2))
    print((N,C,S), ' | '.join('%s %.3f'%kv for kv in r.items()), flush=True)
print('--- per-channel dot products')
for N,C,S in [(256,1024,1),(32,256,196),(4096,1024,1),(64,64,1024)]:
    rng=np.random.default_rng(0)
    x3=rng.standard_normal((N,C,S),dtype=np.float32); y3=rng.standard_normal((N,C,S),dtype=np.float32); o3=np.empty_like(x3)
    r={}
    r['einsum ncs,ncs->c']=med(lambda: np.einsum('ncs,ncs->c',x3,y3))
    if S==1:
        r['einsum nc,nc->c']=med(lambda: np.einsum('nc,nc->c',x3[:,:,0],y3[:,:,0]))
    r['vecdot(-1).sum(0)']=med(lambda: np.vecdot(x3,y3).sum(0))
    r['mul+einsum']=med(lambda: np.einsum('ncs->c',np.multiply(x3,y3,out=o3)))
    r['einsum ncs->c']=med(lambda: np.einsum('ncs->c',x3))
    r['sum(axis=(0,2))']=med(lambda: x3.sum(axis=(0,2)))
    print((N,C,S), ' | '.join('%s %.3f'%kv for kv in r.items()), flush=True)
