"""The fixed parts of ``report.html``: the page skeleton, its style and its script.

The script draws the call log from the JSON the page carries, with ``textContent`` only, and
shows any script error on the page itself. The Content-Security-Policy allows nothing but the
inline style and script: the page can load nothing from anywhere.
"""

from __future__ import annotations

__all__ = ["PAGE", "SCRIPT", "STYLE"]

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title><style>{style}</style></head>
<body><div id="js-errors" hidden></div>
{body}
<script type="application/json" id="calls-data">{data}</script>
<script>{script}</script>
</body></html>
"""
"""The report page's HTML skeleton."""

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;
color:#1d2433}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}small{color:#667}
.meta,.note{color:#556}.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{border:1px solid #d6dbe4;border-radius:6px;padding:8px 12px;min-width:92px}
.card .n{font-size:20px;font-weight:600}.card .l{color:#667;font-size:12px}
.card.bad{border-color:#d33;background:#fff3f3}.card.bad .n{color:#b00}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #e4e7ee;padding:4px 6px;text-align:left;vertical-align:top}
#reasons td{font-size:14px}#reasons td:first-child{font-weight:600;white-space:nowrap}
.fix{color:#335}details.group{margin:10px 0}summary{cursor:pointer;font-weight:600}
td.p{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all;max-width:520px}
#calls td:not(.p){white-space:nowrap}tr.bad td{background:#fff5f5}tr.retry td{background:#fff9ec}
#js-errors{background:#b00;color:#fff;padding:8px}
svg text{font-size:11px;fill:#556}
"""
"""The report page's stylesheet."""

# Renders the call log from the JSON above with textContent only (never innerHTML), and shows
# any script error on the page itself, so a broken page is visible rather than blank.
SCRIPT = """
(function(){
var errors=document.getElementById('js-errors');
window.addEventListener('error',function(ev){errors.hidden=false;
 errors.textContent='Page error: '+ev.message;errors.setAttribute('data-error','1');});
var calls=JSON.parse(document.getElementById('calls-data').textContent);
var body=document.querySelector('#calls tbody');
var filter=document.getElementById('status-filter');
var shown=document.getElementById('calls-count');
function cell(row,text,cls){var td=document.createElement('td');td.textContent=text;
 if(cls){td.className=cls;}row.appendChild(td);}
function isBad(c){return !c.x&&(c.s===null||c.s>=300||c.c!==null);}
function keep(c,f){if(f==='all'){return true;}
 var bad=isBad(c);
 if(f==='failed'){return bad||c.a>1;}return String(c.s)===f;}
function render(){var f=filter.value;body.textContent='';var n=0;
 calls.forEach(function(c){if(!keep(c,f)){return;}n++;var tr=document.createElement('tr');
  if(isBad(c)){tr.className='bad';}else if(c.a>1){tr.className='retry';}
  cell(tr,c.t?new Date(c.t*1000).toISOString().substring(11,23):'');
  cell(tr,c.m+' /'+c.e);cell(tr,String(c.a));cell(tr,c.s===null?'no reply':String(c.s));
  cell(tr,(c.c!==null?'error '+c.c+': ':'')+c.msg);
  cell(tr,c.d?String(Math.round(c.d*1000)):'');cell(tr,c.p,'p');body.appendChild(tr);});
 shown.textContent=n.toLocaleString('en')+' shown';}
var asked=/^#status=(.+)$/.exec(window.location.hash);
var want=null;
if(asked){try{want=decodeURIComponent(asked[1]);}catch(e){want=null;}}
if(want!==null){
 Array.prototype.forEach.call(filter.options,function(o){if(o.value===want){filter.value=want;}});}
filter.addEventListener('change',function(){
 history.replaceState(null,'',filter.value==='all'?'#':'#status='+encodeURIComponent(filter.value));
 render();});
render();
document.body.setAttribute('data-ready','1');
})();
"""
"""The report page's script: renders the call log with ``textContent`` only."""
