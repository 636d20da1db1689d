"use strict";(self.rspackChunklmnb_labextension=self.rspackChunklmnb_labextension||[]).push([[700],{646(e,t,n){var r=n(601),o=n.n(r),a=n(314),l=(n.n(a))()(o());l.push([e.id,`/* lmnb's status bar item and "Local LLM" panel. Only JupyterLab's CSS variables, so that the
   light, dark and high-contrast themes all apply. */

.lmnb-StatusItem {
  display: flex;
  align-items: center;
  max-width: 42em;
  padding: 0 6px;
  cursor: pointer;
}

.lmnb-StatusItem-text {
  overflow: hidden;
  white-space: nowrap;
  text-overflow: ellipsis;
}

.lmnb-StatusItem[data-state='not-loaded'] .lmnb-StatusItem-text,
.lmnb-StatusItem[data-state='connecting'] .lmnb-StatusItem-text {
  color: var(--jp-ui-font-color2);
}

.lmnb-StatusItem[data-state='loading'] .lmnb-StatusItem-text,
.lmnb-StatusItem[data-state='generating'] .lmnb-StatusItem-text {
  color: var(--jp-brand-color1);
}

.lmnb-StatusItem[data-state='serving'] .lmnb-StatusItem-text {
  color: var(--jp-success-color1);
}

.lmnb-Panel {
  display: flex;
  flex-direction: column;
  gap: 8px;
  min-width: 240px;
  padding: 8px 12px;
  overflow-y: auto;
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
}

.lmnb-Panel h2 {
  margin: 4px 0;
  font-size: var(--jp-ui-font-size2);
  font-weight: 600;
}

.lmnb-Panel h3 {
  margin: 0;
  font-size: var(--jp-ui-font-size1);
  font-weight: 600;
  text-transform: uppercase;
  letter-spacing: 0.04em;
  color: var(--jp-ui-font-color2);
}

.lmnb-Panel [hidden] {
  display: none !important;
}

.lmnb-Panel-summary {
  color: var(--jp-ui-font-color2);
  overflow-wrap: anywhere;
}

.lmnb-Panel-ready {
  display: flex;
  flex-direction: column;
  gap: 12px;
}

.lmnb-Panel-section {
  display: flex;
  flex-direction: column;
  gap: 6px;
}

.lmnb-Panel-sectionHeader,
.lmnb-Panel-row,
.lmnb-Panel-loadOther {
  display: flex;
  align-items: center;
  gap: 6px;
}

.lmnb-Panel-sectionHeader {
  justify-content: space-between;
}

.lmnb-Panel-message {
  margin: 0;
  color: var(--jp-ui-font-color2);
}

.lmnb-Panel-error {
  display: flex;
  align-items: flex-start;
  gap: 6px;
  padding: 6px 8px;
  border: var(--jp-border-width) solid var(--jp-error-color1);
  border-radius: var(--jp-border-radius);
  background: var(--jp-error-color3);
  color: var(--jp-ui-font-color1);
}

.lmnb-Panel-errorText {
  flex: 1;
  overflow-wrap: anywhere;
  white-space: pre-wrap;
}

.lmnb-Panel-notLoaded p {
  margin: 0;
}

.lmnb-Panel .lmnb-Button {
  flex: none;
  width: auto;
  padding: 0 10px;
  height: 24px;
  line-height: 22px;
  font-size: var(--jp-ui-font-size1);
}

.lmnb-Panel .lmnb-Input {
  flex: 1;
  min-width: 0;
  height: 24px;
  box-sizing: border-box;
  padding: 0 6px;
  color: var(--jp-ui-font-color1);
  background: var(--jp-input-background, var(--jp-layout-color1));
  border: var(--jp-border-width) solid var(--jp-border-color1);
  font-size: var(--jp-ui-font-size1);
}

.lmnb-Panel-serverRunning {
  flex-wrap: wrap;
}

/* The URL gets a line of its own; Copy and Stop go below it. */
.lmnb-Panel .lmnb-Panel-url {
  flex: 1 1 100%;
  font-family: var(--jp-code-font-family);
}

.lmnb-Panel-progress {
  width: 100%;
  accent-color: var(--jp-brand-color1);
}

.lmnb-ModelList {
  margin: 0;
  padding: 0;
  list-style: none;
  border: var(--jp-border-width) solid var(--jp-border-color2);
  border-radius: var(--jp-border-radius);
}

.lmnb-ModelList-item,
.lmnb-ModelList-empty {
  display: flex;
  align-items: center;
  gap: 8px;
  padding: 6px 8px;
}

.lmnb-ModelList-item + .lmnb-ModelList-item {
  border-top: var(--jp-border-width) solid var(--jp-border-color2);
}

.lmnb-ModelList-item[data-loaded='true'] {
  background: var(--jp-layout-color2);
}

.lmnb-ModelList-empty {
  color: var(--jp-ui-font-color2);
}

.lmnb-ModelList-info {
  flex: 1;
  min-width: 0;
}

.lmnb-ModelList-name {
  overflow: hidden;
  white-space: nowrap;
  text-overflow: ellipsis;
  font-weight: 600;
}

.lmnb-ModelList-details {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.lmnb-Panel-parameterTable {
  border-collapse: collapse;
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
}

.lmnb-Panel-parameterTable th,
.lmnb-Panel-parameterTable td {
  padding: 2px 12px 2px 0;
  text-align: left;
  font-weight: normal;
}

.lmnb-Panel-parameterTable th {
  color: var(--jp-ui-font-color2);
}
`,""]),n.d(t,{},{A:l})},314(e){e.exports=function(e){var t=[];return t.toString=function(){return this.map(function(t){var n="",r=void 0!==t[5];return t[4]&&(n+="@supports (".concat(t[4],") {")),t[2]&&(n+="@media ".concat(t[2]," {")),r&&(n+="@layer".concat(t[5].length>0?" ".concat(t[5]):""," {")),n+=e(t),r&&(n+="}"),t[2]&&(n+="}"),t[4]&&(n+="}"),n}).join("")},t.i=function(e,n,r,o,a){"string"==typeof e&&(e=[[null,e,void 0]]);var l={};if(r)for(var i=0;i<this.length;i++){var s=this[i][0];null!=s&&(l[s]=!0)}for(var p=0;p<e.length;p++){var c=[].concat(e[p]);r&&l[c[0]]||(void 0!==a&&(void 0===c[5]||(c[1]="@layer".concat(c[5].length>0?" ".concat(c[5]):""," {").concat(c[1],"}")),c[5]=a),n&&(c[2]&&(c[1]="@media ".concat(c[2]," {").concat(c[1],"}")),c[2]=n),o&&(c[4]?(c[1]="@supports (".concat(c[4],") {").concat(c[1],"}"),c[4]=o):c[4]="".concat(o)),t.push(c))}},t}},601(e){e.exports=function(e){return e[1]}},72(e){var t=[];function n(e){for(var n=-1,r=0;r<t.length;r++)if(t[r].identifier===e){n=r;break}return n}function r(e,r){for(var o={},a=[],l=0;l<e.length;l++){var i=e[l],s=r.base?i[0]+r.base:i[0],p=o[s]||0,c="".concat(s," ").concat(p);o[s]=p+1;var d=n(c),m={css:i[1],media:i[2],sourceMap:i[3],supports:i[4],layer:i[5]};if(-1!==d)t[d].references++,t[d].updater(m);else{var u=function(e,t){var n=t.domAPI(t);return n.update(e),function(t){t?(t.css!==e.css||t.media!==e.media||t.sourceMap!==e.sourceMap||t.supports!==e.supports||t.layer!==e.layer)&&n.update(e=t):n.remove()}}(m,r);r.byIndex=l,t.splice(l,0,{identifier:c,updater:u,references:1})}a.push(c)}return a}e.exports=function(e,o){var a=r(e=e||[],o=o||{});return function(e){e=e||[];for(var l=0;l<a.length;l++){var i=n(a[l]);t[i].references--}for(var s=r(e,o),p=0;p<a.length;p++){var c=n(a[p]);0===t[c].references&&(t[c].updater(),t.splice(c,1))}a=s}}},659(e){var t={};e.exports=function(e,n){var r=function(e){if(void 0===t[e]){var n=document.querySelector(e);if(window.HTMLIFrameElement&&n instanceof window.HTMLIFrameElement)try{n=n.contentDocument.head}catch(e){n=null}t[e]=n}return t[e]}(e);if(!r)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");r.appendChild(n)}},540(e){e.exports=function(e){var t=document.createElement("style");return e.setAttributes(t,e.attributes),e.insert(t,e.options),t}},56(e,t,n){e.exports=function(e){var t=n.nc;t&&e.setAttribute("nonce",t)}},825(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var t=e.insertStyleElement(e);return{update:function(n){var r,o,a;r="",n.supports&&(r+="@supports (".concat(n.supports,") {")),n.media&&(r+="@media ".concat(n.media," {")),(o=void 0!==n.layer)&&(r+="@layer".concat(n.layer.length>0?" ".concat(n.layer):""," {")),r+=n.css,o&&(r+="}"),n.media&&(r+="}"),n.supports&&(r+="}"),(a=n.sourceMap)&&"u">typeof btoa&&(r+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),e.styleTagTransform(r,t,e.options)},remove:function(){var e;null===(e=t).parentNode||e.parentNode.removeChild(e)}}}},113(e){e.exports=function(e,t){if(t.styleSheet)t.styleSheet.cssText=e;else{for(;t.firstChild;)t.removeChild(t.firstChild);t.appendChild(document.createTextNode(e))}}},959(e,t,n){var r=n(72),o=n.n(r),a=n(825),l=n.n(a),i=n(659),s=n.n(i),p=n(56),c=n.n(p),d=n(540),m=n.n(d),u=n(113),f=n.n(u),b=n(646),v={};v.styleTagTransform=f(),v.setAttributes=c(),v.insert=s().bind(null,"head"),v.domAPI=l(),v.insertStyleElement=m(),o()(b.A,v),b.A&&b.A.locals&&b.A.locals}}]);