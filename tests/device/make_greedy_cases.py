# Writes .devcheck/trained/greedy.json: srlm's greedy answers (`srlm generate --chat --temperature 0`) of the
# checkpoints copied into .devcheck/trained/ (tests/device/README.md). Run from the repository root.
import json, os, subprocess
srlm = os.environ.get('SRLM', 'src/Srlm.Cli/bin/Release/net10.0/srlm')
def gen(model, prompt, n):
    r=subprocess.run([srlm,'generate','--chat','--model',model,'--prompt',prompt,'--temperature','0','--max-new-tokens',str(n)],capture_output=True,text=True)
    assert r.returncode==0, r.stderr
    return r.stdout.rstrip('\n')
cases=[]
smoke=[json.loads(l)['instruction'] for l in open('samples/smoke/seed/test.jsonl')][:6]
for p in smoke: cases.append(('smoke-m1',p,8))
tiny=[json.loads(l) for l in open('samples/tiny/seed/test.jsonl')][:5]
for t in tiny: cases.append(('tiny-m1',t['instruction'],16))
tmpl=open('samples/tiny/seed/judge_template.txt').read()
for t in tiny[:3]:
    cases.append(('tiny-m1',tmpl.replace('{instruction}',t['instruction']).replace('{response}',t['answer']),80))
res=[]
for m,p,n in cases:
    res.append({'model':m,'instruction':p,'max_new_tokens':n,'ours':gen('.devcheck/trained/'+m,p,n)})
    print(m, repr(res[-1]['ours'][:100]))
json.dump(res,open('.devcheck/trained/greedy.json','w'),indent=1)
